"""Stage 2, training: SFT, GRPO and continued pre-training on the compiled examples (TRL + PEFT)."""
