"""``ctk`` stand-in: empty; CTK widgets exist only in the real application (the .ui test uses fakes)."""
