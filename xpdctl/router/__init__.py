"""The PD-aware, OpenAI-compatible router."""
