"""What every stage runs: where files go (paths), how they are written (io: atomic, all or nothing)
and how a stage ends (errors: one line for a user mistake, a clean exit on Ctrl-C)."""
