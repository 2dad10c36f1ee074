"""docs/architecture.rst shows the lifecycle table as it is in the code."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_lifecycle_diagram_is_generated_from_the_table():
    script = os.path.join(ROOT, "scripts", "make_lifecycle_diagram.py")
    done = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_diagram_names_every_transition():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import make_lifecycle_diagram as diagram
    finally:
        sys.path.pop(0)
    from cti_dialer import lifecycle
    text = diagram.render()
    for src, event, dst in lifecycle.edges():
        assert '"%s" -> "%s" [label="%s"];' % (src.value, dst.value, event.value) in text
