"""Seed the three plans and the model price table (staff edit both in the admin afterwards).

Creates rows that do not exist yet and never overwrites what staff changed; reversing does
nothing (plans may already be referenced by subscriptions).
"""

import datetime
from decimal import Decimal

from django.db import migrations

PLANS = [
    {
        "slug": "starter",
        "name": "Starter",
        "description": "One OpenClaw assistant for yourself.",
        "monthly_price_cents": 1900,
        "first_month_price_cents": 100,
        "max_instances": 1,
        "max_memory_mb": 2048,
        "max_cpus": Decimal("1"),
        "backup_daily_retention": 7,
        "backup_weekly_retention": 4,
        "session_idle_days": 30,
        "session_max_count": 2000,
        "included_llm_credit_cents": 500,
        "sort_order": 10,
    },
    {
        "slug": "pro",
        "name": "Pro",
        "description": "Three assistants with more memory, for a small team.",
        "monthly_price_cents": 4900,
        "first_month_price_cents": 100,
        "max_instances": 3,
        "max_memory_mb": 4096,
        "max_cpus": Decimal("2"),
        "backup_daily_retention": 14,
        "backup_weekly_retention": 8,
        "session_idle_days": 60,
        "session_max_count": 5000,
        "included_llm_credit_cents": 1500,
        "sort_order": 20,
    },
    {
        "slug": "agency",
        "name": "Agency",
        "description": "Twenty assistants for your clients, one dashboard and API.",
        "monthly_price_cents": 19900,
        "first_month_price_cents": 100,
        "max_instances": 20,
        "max_memory_mb": 4096,
        "max_cpus": Decimal("2"),
        "backup_daily_retention": 14,
        "backup_weekly_retention": 12,
        "session_idle_days": 90,
        "session_max_count": 10000,
        "included_llm_credit_cents": 6000,
        "sort_order": 30,
    },
]

# USD per million tokens: input, output, cache read, cache write.
PRICES = [
    ("custom", "mock-1", "3.00", "15.00", "0.30", "3.75"),
    ("openai", "gpt-4o-mini", "0.15", "0.60", "0.075", "0"),
    ("openai", "gpt-4o", "2.50", "10.00", "1.25", "0"),
    ("openai", "gpt-4.1", "2.00", "8.00", "0.50", "0"),
    ("openai", "gpt-4.1-mini", "0.40", "1.60", "0.10", "0"),
    ("anthropic", "claude-sonnet-4", "3.00", "15.00", "0.30", "3.75"),
    ("anthropic", "claude-opus-4", "15.00", "75.00", "1.50", "18.75"),
    ("anthropic", "claude-3-5-haiku", "0.80", "4.00", "0.08", "1.00"),
]
EFFECTIVE_FROM = datetime.date(2025, 1, 1)


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for plan in PLANS:
        Plan.objects.get_or_create(slug=plan["slug"], defaults=plan)
    for provider, model, inp, out, cread, cwrite in PRICES:
        ModelPrice.objects.get_or_create(
            provider=provider,
            model=model,
            effective_from=EFFECTIVE_FROM,
            defaults={
                "input_per_mtok": Decimal(inp),
                "output_per_mtok": Decimal(out),
                "cache_read_per_mtok": Decimal(cread),
                "cache_write_per_mtok": Decimal(cwrite),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_usage_snapshots_pauses")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
