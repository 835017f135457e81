"""Taskyard tasks that count words."""
