"""config subpackage."""
