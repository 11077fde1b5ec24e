"""Pure domain logic: windows, policy, detection and recipient filtering. No I/O, no clock."""
