"""Stage 1, data: compile raw events into examples, render prompts, parse and resolve answers."""
