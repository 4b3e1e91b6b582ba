"""Reusable widgets of the workbench (charts, token views, pickers, forms), each with its tests."""
