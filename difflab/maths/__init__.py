"""The mathematics: no I/O, no registry. Schedules and the forward process, exact laws on Gaussian
targets, the error decomposition, ODE likelihoods, metric estimators, MCMC diagnostics and the
exact-draw floors. Imports only the ground floor and ``difflab.contracts``."""
