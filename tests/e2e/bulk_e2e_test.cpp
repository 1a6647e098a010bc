// Bulk campaigns end to end (filled in below).
