"""power subpackage."""
