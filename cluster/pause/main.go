// Command pause is the process of a pod's sandbox container: it holds the
// pod's namespaces open until the runtime stops it. No registry is reachable
// here to pull the usual pause image, so the node runs this one.
//
// When the pod shares its process namespace this is PID 1 there, so it also
// reaps orphans that die under it; nothing else would.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			// PID 1 has no default signal actions: exiting is ours to do.
			os.Exit(0)
		}
		reapAll()
	}
}

// reapAll collects every exited child: several exits can share one SIGCHLD.
func reapAll() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
