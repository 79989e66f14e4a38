"""Sales' verdicts on the leads leadflow handed over, read every run from the CRM's history.

`classify` is the pure rule; `tables` the warehouse's event table; `read` the run's step (which
leads to look at, one `connector.observe` for them, the events stored once)."""
