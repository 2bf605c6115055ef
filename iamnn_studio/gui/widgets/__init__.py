"""Small reusable widgets of the Use and Study views."""
