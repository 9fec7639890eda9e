package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/internal/agent"
)

// agentCmd is `phigate agent`; internal/agent parses its flags, so that the
// lean phigate-agent binary is the very same command.
func (a *cli) agentCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "agent --token-file F --sink F | --config F",
		Short:              "Keep an application's token fresh on disk: rotate it, write it, tell the application",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := agent.Main(cmd.Context(), args, a.env, a.stderr)
			if errors.Is(err, agent.ErrUsage) {
				return usageErr{err}
			}
			return err
		},
	}
}
