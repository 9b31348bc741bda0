package smtp

// SetLoopDetectPort makes a's mail-loop detection apply to port instead
// of 25, for tests whose servers listen on other ports.
func SetLoopDetectPort(a *Agent, port int) { a.loopPort = port }
