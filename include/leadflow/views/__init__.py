"""What the Leadflow page (`leadflow.ui`) and the run report (`leadflow.report`) both show a run with:

- `leadflow.views.queries`: read-only warehouse queries;
- `leadflow.views.charts`: inline SVG charts;
- `leadflow.views.render`: the Jinja2 templates (views/templates/);
- `leadflow.views.paths`: where run reports and Data Docs live.
"""
