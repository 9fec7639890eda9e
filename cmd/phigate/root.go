package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/pkg/client"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// cli is what the client commands share.
type cli struct {
	stdout, stderr io.Writer
	env            func(string) string
	json           bool
}

// newRootCmd builds the phigate command tree. Output goes to stdout and
// stderr; client commands read their configuration through env.
func newRootCmd(stdout, stderr io.Writer, env func(string) string) *cobra.Command {
	a := &cli{stdout: stdout, stderr: stderr, env: env}
	root := &cobra.Command{
		Use:   "phigate",
		Short: "phigate: HIPAA-grade API token authority and gateway",
		Long: `phigate issues scoped, short-lived API tokens, enforces them in front of the
APIs that hold PHI, and records every use in a tamper-evident audit log.

Client commands talk to the admin API configured by the environment:
  PHIGATE_ADDR    admin API address (default https://127.0.0.1:8443)
  PHIGATE_TOKEN   bearer token (an admin token such as the one server --dev prints)
  PHIGATE_PIN     SHA-256 pin(s) of the server's public key, comma separated
  PHIGATE_CACERT  PEM file of the CA that signed the server's certificate`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr{err} })
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print machine-readable JSON")
	root.AddCommand(
		newServerCmd(),
		newInitCmd(),
		a.tokenCmd(),
		a.introspectCmd(),
		a.auditCmd(),
		a.secretCmd(), a.keysCmd(),
		a.agentCmd(),
		a.alertsCmd(),
		a.scanCmd(),
		a.clientCmd(),
	)
	return root
}

// execute runs root with args and maps the outcome to an exit code, printing
// any error to stderr as "phigate: …".
func execute(ctx context.Context, root *cobra.Command, args []string, stdin io.Reader, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetIn(stdin)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ee exitErr
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "phigate: %s\n", strings.TrimPrefix(ee.err.Error(), "phigate: "))
		}
		return ee.code
	}
	msg := strings.TrimPrefix(err.Error(), "phigate: ")
	fmt.Fprintf(stderr, "phigate: %s\n", msg)
	var ue usageErr
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// usageErr is a mistake on the command line: exit code 2.
type usageErr struct{ err error }

func (e usageErr) Error() string { return e.err.Error() }
func (e usageErr) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageErr{fmt.Errorf(format, a...)} }

// noArgs refuses arguments, naming an unknown subcommand as such.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return usagef("unknown command %s for %q", quote(args[0]), cmd.CommandPath())
	}
	return usagef("%s takes no arguments", name(cmd))
}

// name is the command's path without the root: "token show".
func name(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return cmd.Name()
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// idArg requires exactly one argument, a token id.
func idArg(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return usagef("%s needs a token ID", name(cmd))
	case len(args) > 1:
		return usagef("%s takes one token ID, got %d arguments", name(cmd), len(args))
	case strings.TrimSpace(args[0]) == "":
		return usagef("%s: empty token ID", name(cmd))
	}
	return nil
}

// group makes cmd a command that only holds subcommands: alone it prints
// its help; with an unknown subcommand it is a usage error.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	return cmd
}

// client returns the admin API client configured by the environment.
func (a *cli) client() (*client.Client, error) {
	if strings.TrimSpace(a.env(client.EnvToken)) == "" {
		return nil, fmt.Errorf("%s is not set: export a phigate token allowed to manage tokens (server --dev prints a bootstrap admin token)", client.EnvToken)
	}
	return a.publicClient()
}

// publicClient is a client of the server PHIGATE_ADDR and PHIGATE_PIN
// describe, with the token in PHIGATE_TOKEN if any, for the endpoints that
// need none.
func (a *cli) publicClient() (*client.Client, error) {
	return client.FromEnvFunc(a.env, client.WithUserAgent("phigate-cli/1"))
}

// output prints v as JSON with --json, or with human otherwise.
func (a *cli) output(v any, human func(io.Writer) error) error {
	if a.json {
		return printJSON(a.stdout, v)
	}
	return human(a.stdout)
}
