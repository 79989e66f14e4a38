"""The account view's warehouse side: the per-company table and the write of leadflow's own
company properties (the rules themselves are in `leadflow.qualify.accounts`)."""
