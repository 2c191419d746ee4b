// Module SquisherTraining.
