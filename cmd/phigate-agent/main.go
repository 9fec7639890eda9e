// Command phigate-agent is `phigate agent` alone: the same command, built
// without the server, for hosts where the agent must stay small (the full
// phigate binary carries the server's store and key-management clients,
// whose pages count in the agent's resident memory). See internal/agent.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/phigate/phigate/internal/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := agent.Main(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "phigate agent: %s\n", strings.TrimPrefix(err.Error(), "phigate: "))
	if errors.Is(err, agent.ErrUsage) {
		os.Exit(2)
	}
	os.Exit(1)
}
