"""Self-contained HTML report of one run (inline CSS and SVG, readable offline).

    path = write_run_report(engine, crm, run_id, folder)   # <folder>/<crm>/<run folder>.html

The Leadflow page links every run to its report (`/leadflow/report?crm=&run_id=`), serving the
file when this machine holds it and rendering the same report from the warehouse otherwise.
"""

from leadflow.report.run_report import default_report_folder, render_run_report, write_run_report

__all__ = ["default_report_folder", "render_run_report", "write_run_report"]
