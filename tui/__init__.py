"""The llmlab workbench: a Textual app over `core` (it imports core, never torch)."""
