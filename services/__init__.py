"""The certibloc services and the runtime they share."""
