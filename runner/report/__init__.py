"""`optrun-report`: read results trees back, aggregate, draw figures and check claims."""
