"""One router per view of the dashboard."""
