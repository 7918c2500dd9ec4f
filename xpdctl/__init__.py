"""xpdctl: cross-vendor prefill/decode disaggregated LLM serving clusters."""

__version__ = "0.1.0"
