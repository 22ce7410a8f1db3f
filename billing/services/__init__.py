"""Writes for billing, one module per sub-domain (import the module you need; nothing is
re-exported here):

- `subscriptions`: the Stripe customer, Checkout and the portal, comps, and mirroring a Stripe
  subscription onto ours order-independently.
- `stripe_events`: webhook events stored by id and processed exactly once (the dispatch table);
  billing/webhooks.py is only the HTTP view that verifies and stores them.
- `grace`: a failed payment starts the grace period; after it, instances are paused (backup
  first); a paid invoice resumes what billing paused.
- `usage`: the hourly rollup into the cost ledger (compute from the recorded state transitions,
  tokens from the session snapshots).
- `overage`: LLM usage beyond a plan's credit, reported to Stripe as meter events.
- `budgets`: monthly caps, their alerts and pauses.
- `catalog`: staff edits of plans and model prices, audited.
- `pauses` and `common`: what the modules above share.

Instances are counted, paused, resumed and billed through billing.capabilities (hooks the apps
above billing provide); Stripe is reached only through billing.stripe_api.
"""
