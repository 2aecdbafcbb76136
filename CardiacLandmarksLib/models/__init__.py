"""Network architectures, one file per architecture (torch.nn modules only, no I/O)."""
