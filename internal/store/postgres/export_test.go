package postgres

// ParseNotification is parseNotification, for the fuzz test.
var ParseNotification = parseNotification
