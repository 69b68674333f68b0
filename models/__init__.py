"""Decision logic shared by training, serving and monitoring: imports nothing of theirs."""
