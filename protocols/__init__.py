"""Built-in protocol specs (YAML files in this folder), shipped as package data."""
