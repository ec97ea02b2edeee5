"""Domain logic: one transaction per operation, events written in the same transaction.

The transaction convention (CONTRIBUTING.md, "One transaction convention"): a service function's
signature says whether it opens a transaction or joins one.

- An *operation* takes no ``tx``: it opens its transaction itself (``platform.run``/
  ``platform.store.write()``, or ``store.read()`` to read) and commits it, one per request (a
  maintenance job such as ``secret_keys.rotate_secret_key`` opens one per batch). It is never
  called while its caller holds a transaction (on SQLite that would wait on itself). Examples:
  ``webhooks.create_endpoint``, ``access.create_api_key``, ``idempotency.run_once``,
  ``trigger.trigger``, every ``get``/``search``.
- A *step* takes ``tx`` right after ``platform`` (or first): it runs inside its caller's
  transaction, never opens or commits one, and its docstring says "in the caller's
  transaction". Steps exist where one transaction must hold more than one change:
  ``events.record`` and ``webhooks.fan_out`` (the outbox row and its deliveries commit with the
  change), ``customers.insert`` (an order creates its customer), and the resource writes
  ``customers``/``products``/``orders`` ``insert``/``update``/``delete``, which the API runs
  inside ``idempotency.run_once`` (the stored response commits with the change) or
  ``platform.run``, and ``trigger`` chains.

``Platform`` (the store, the settings, the clock, the secret box) lives in ``bitbybit.runtime``,
below this package and ``bitbybit.delivery`` alike.
"""
