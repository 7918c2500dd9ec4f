"""The KV agent: one per host, checks and measures every prefill->decode KV path it takes part in."""
