"""Webhook delivery: the worker, the sender, the retry policy and the SSRF guard."""
