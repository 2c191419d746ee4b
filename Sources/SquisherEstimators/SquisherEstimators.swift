// Module SquisherEstimators.
