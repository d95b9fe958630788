"""Widgets shared by the views: the live table, the frame (top bar, banner, status line,
filter and command bars), cell formatters and the routing-explanation renderer."""
