// Module SquisherApplications.
