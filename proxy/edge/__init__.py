"""What stands between the socket and the app: the listeners' options, what one client may cost, start-up signals."""
