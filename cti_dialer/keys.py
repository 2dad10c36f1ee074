"""Every Redis key and channel name the dialer reads or writes.

Operator-written keys follow the seed spec; daemon-written keys use the same
``name@scope`` style. Nothing else in the package builds a key name.
"""

# Operator-written tables (the part before '@' is the ``table`` of a
# config_change notification).
TASK_TABLE = "cti_queue_dialer_task"
LINE_TABLE = "cti_line"
GROUP_TABLE = "cti_line_group"
SCHEDULE_CONFIG_TABLE = "cti_schedule_dialer_config"
SCHEDULE_NUMBER_TABLE = "cti_schedule_dialer_number"

# The tables a config_change may name: the hashes a daemon caches.
CONFIG_TABLES = (TASK_TABLE, LINE_TABLE, GROUP_TABLE, SCHEDULE_CONFIG_TABLE)

TEMPLATE_SCOPE = "template"

CONFIG_CHANNEL = "config"
ALL_HOSTS_SCOPE = "all"


class Keys:
    """Key names for one daemon (its host and domain)."""

    def __init__(self, host, domain):
        self.host = host
        self.domain = domain

    # --- written by operators and upstream systems -------------------------
    @staticmethod
    def tasks_for(host=None):
        """Hash of tasks: the template (every host) when ``host`` is None, else that host's own."""
        return "%s@%s" % (TASK_TABLE, host or TEMPLATE_SCOPE)

    @property
    def task_template(self):
        return self.tasks_for(None)

    @property
    def task_host(self):
        return self.tasks_for(self.host)

    @property
    def lines(self):
        return "%s@%s" % (LINE_TABLE, self.domain)

    @property
    def groups(self):
        return "%s@%s" % (GROUP_TABLE, self.domain)

    @property
    def schedule_configs(self):
        return "%s@%s" % (SCHEDULE_CONFIG_TABLE, self.domain)

    @property
    def schedule_numbers(self):
        return "%s@%s" % (SCHEDULE_NUMBER_TABLE, self.domain)

    @staticmethod
    def channel_for(host=None):
        """Channel of config_change: every host's when ``host`` is None, else that host's only."""
        return "%s@%s" % (CONFIG_CHANNEL, host or ALL_HOSTS_SCOPE)

    @property
    def channel_all(self):
        return self.channel_for(None)

    @property
    def channel_host(self):
        return self.channel_for(self.host)

    # --- written by the daemon ---------------------------------------------
    @property
    def inflight(self):
        """Hash: claim id -> JSON of a number this host took and has not finished."""
        return self.inflight_of(self.host)

    def line_lease(self, line):
        """Sorted set: claim id -> lease expiry (unix time) of calls on a line, all hosts."""
        return "cti_dialer_line_lease@%s:%s" % (self.domain, line)

    @property
    def line_state(self):
        """Hash: rests, outages and failure counts of lines and groups, all hosts (scripts.LINES)."""
        return "cti_dialer_line_state@%s" % self.domain

    def pace(self, task):
        """String with TTL: a task's cps pace, the time its next call is due (scripts.LINES)."""
        return "cti_dialer_pace@%s:%s" % (self.domain, task)

    def attempts(self, day, number):
        """Counter with TTL: attempts on ``number`` on ``day`` (YYYY-MM-DD) across the domain's tasks."""
        return "cti_dialer_attempts@%s:%s:%s" % (self.domain, day, number)

    @property
    def results(self):
        """Stream: one entry per finished attempt (answered, failed, dropped, rejected...)."""
        return "cti_dialer_result@%s" % self.domain

    @property
    def rejected(self):
        """Stream: malformed or unsafe input, with its raw value, source and reason."""
        return "cti_dialer_rejected@%s" % self.domain

    @property
    def dnc(self):
        """Set: numbers never to dial (operator-written)."""
        return "cti_dnc@%s" % self.domain

    def retries(self, task):
        """Sorted set: score = due time, member = JSON of a queue task's pending redial."""
        return "cti_dialer_retry@%s:%s" % (self.domain, task)

    def counters(self, owner):
        """Hash: counters of a task (or ``schedule:<config>``) across all hosts."""
        return "cti_dialer_counter@%s:%s" % (self.domain, owner)

    def seen(self, owner, entry_id):
        """String with TTL: an entry id already taken for this task (idempotent enqueue).

        The owner is length-prefixed (``<domain>:3:a:b:x`` is task ``a:b``,
        id ``x``; ``<domain>:1:a:b:x`` is task ``a``, id ``b:x``): both may
        contain ':', and a plain join let two pairs share a key.
        """
        return "cti_dialer_seen@%s:%d:%s:%s" % (self.domain, len(owner), owner, entry_id)

    def alive(self, host=None):
        """String with TTL: present while a host's daemon is alive (its heartbeat)."""
        return "cti_dialer_alive@%s" % (host or self.host)

    def instance(self, host=None):
        """String with TTL: the instance id of the one running daemon that holds a host name."""
        return "cti_dialer_instance@%s" % (host or self.host)

    def inflight_of(self, host):
        return "cti_dialer_inflight@%s" % host

    @property
    def hosts(self):
        """Set: every host that ever ran a daemon on this domain (for takeover)."""
        return "cti_dialer_hosts@%s" % self.domain

    @property
    def status(self):
        """Hash: this daemon's state, heartbeat and counters."""
        return "cti_dialer_status@%s" % self.host

    @property
    def task_status(self):
        """Hash: task name -> JSON status of that task on this host."""
        return "cti_dialer_task_status@%s" % self.host

    # --- written by the HTTP API (through the admin layer) -------------------
    def idempotence(self, key):
        """String with TTL: the first response to a request carrying ``Idempotence-Key: key``.

        Shared by every API process on this Redis (one domain, as the seed's
        key covers a whole account), kept 24 hours from first use.
        """
        return "cti_dialer_idempotence@%s:%s" % (self.domain, key)

    def stopped(self, task):
        """List: the queued numbers a ``stop`` moved aside (same order as a queue: oldest at the right)."""
        return "cti_dialer_stopped@%s:%s" % (self.domain, task)

    def stopped_redials(self, task):
        """Sorted set: the pending redials a ``stop`` moved aside (score = the due time they had)."""
        return "cti_dialer_stopped_retry@%s:%s" % (self.domain, task)

    @property
    def stopped_tasks(self):
        """Hash: task name -> unix time of its last ``stop`` (cleared by ``resume``)."""
        return "cti_dialer_stopped_at@%s" % self.domain
