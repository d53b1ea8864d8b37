"""Pure decisions: given an aggregate's state and a command, which events follow."""
