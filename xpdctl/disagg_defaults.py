"""Defaults shared by the inventory, the router's config and the performance model.

A neutral module so that none of them imports another for a number: the inventory's
``router.conditional_disagg_min_prompt_tokens`` defaults to it, the router's config does too (the
router also runs without an inventory), and ``advise`` models the same threshold.
"""

# Prompts shorter than this (estimated tokens) go to the decode pool whole under conditional
# disaggregation: below a few hundred tokens the KV round trip costs more than prefilling in place.
MIN_PROMPT_TOKENS = 256
