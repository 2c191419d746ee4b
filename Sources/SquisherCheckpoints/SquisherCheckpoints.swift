// Module SquisherCheckpoints.
