"""Thin Celery tasks: ids in, load, call the service."""

from celery import shared_task

from . import operations

# acks_late + reject_on_worker_lost (settings) mean a task whose worker was killed is
# redelivered; run_operation converges, so the redelivery finishes the work.


@shared_task(
    name="instances.tasks.run_operation", acks_late=True, soft_time_limit=1500, time_limit=1800
)
def run_operation_task(op_id: str):
    op = operations.run_operation(op_id)
    return op.state if op else "skipped"
