"""Helpers for testing Taskyard and what is built on it."""
