"""Test fixture: a tool that misbehaves on request. Never publish it anywhere real."""
