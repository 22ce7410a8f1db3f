"""Thin Celery tasks: ids in, load, call the service.

acks_late + reject_on_worker_lost (settings) mean a task whose worker was killed is redelivered;
run_operation converges (and an advisory lock turns a duplicate delivery into a no-op), so the
redelivery finishes the work. Every task here routes to the "operations" queue (settings).
"""

import logging

from celery import shared_task
from django.core.cache import cache

from . import operations

log = logging.getLogger(__name__)


@shared_task(
    name="instances.tasks.run_operation", acks_late=True, soft_time_limit=1500, time_limit=1800
)
def run_operation_task(op_id: str):
    op = operations.run_operation(op_id)
    return op.state if op else "skipped"


@shared_task(
    name="instances.tasks.reconcile_fleet",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=30,
    time_limit=60,
)
def reconcile_fleet():
    """Beat, every FLEET_RECONCILE_SECONDS: resume operations whose worker died, then one
    reconcile task per active host (fan-out)."""
    from .models import Host

    operations.resume_stranded()
    check_egress_firewall()
    host_ids = list(Host.objects.filter(is_active=True).values_list("pk", flat=True))
    for host_id in host_ids:
        reconcile_host_task.delay(host_id)
    return len(host_ids)


def check_egress_firewall() -> None:
    """The tenant firewall of the local engine is re-checked every pass and repaired when a
    rule went missing (an engine restart rewrites iptables; a person flushed a chain)."""
    from . import egress

    problems = egress.verify()
    if not problems:
        return
    log.error("egress firewall drifted: %s", "; ".join(problems))
    remaining = egress.repair()
    if remaining:
        log.error("egress firewall could not be repaired: %s", "; ".join(remaining))
    else:
        log.warning("egress firewall repaired")


@shared_task(
    name="instances.tasks.reconcile_host",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
)
def reconcile_host_task(host_id: int):
    """One pass over one host. Overlapping passes for a host are skipped (a cache lock), so a
    slow engine never piles up reconcile work."""
    from .models import Host
    from .reconcile import reconcile_host

    lock = f"instances:reconcile:{host_id}"
    if not cache.add(lock, "1", timeout=150):
        log.info("reconcile of host %s is already running; skipped", host_id)
        return "skipped"
    try:
        host = Host.objects.filter(pk=host_id, is_active=True).first()
        if host is None:
            return "gone"
        return len(reconcile_host(host))
    finally:
        cache.delete(lock)


@shared_task(
    name="instances.tasks.purge_expired_instances",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=120,
    time_limit=180,
)
def purge_expired_instances():
    """Nightly: request a purge for each instance deleted more than FLEET_DELETE_GRACE_DAYS ago
    (each purge is its own operation, run by the workers one by one)."""
    from accounts.services import SYSTEM

    from .services import purge_expired

    return len(purge_expired(actor=SYSTEM))


from .pool import refill_warm_pools  # noqa: E402,F401 - the warm pool beat task registers here
