package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// maxSecretInput bounds what introspect reads from stdin.
const maxSecretInput = 4096

func (a *cli) introspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "introspect",
		Short: "Check a token read from stdin (RFC 7662)",
		Long: `Introspect reads a token secret from standard input (never from the command
line, where other users and the shell history could see it) and asks the
server whether it is active and what it may do.

  phigate introspect < token-file
  printf '%s' "$TOKEN" | phigate introspect`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := cmd.InOrStdin()
			if f, ok := in.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					fmt.Fprint(a.stderr, "Token to introspect (input is visible; prefer piping it in): ")
				}
			}
			secret, err := readSecret(in)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.Introspect(cmd.Context(), secret)
			if err != nil {
				return err
			}
			return a.output(res, func(w io.Writer) error { return printIntrospection(w, res) })
		},
	}
}

// readSecret reads one token from r: the first line, trimmed.
func readSecret(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxSecretInput+1))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the token from stdin: %w", err)
	}
	if len(line) > maxSecretInput {
		return "", errors.New("the token read from stdin is too long")
	}
	s := strings.TrimSpace(line)
	if s == "" {
		return "", usagef("introspect reads the token from stdin, and stdin was empty")
	}
	return s, nil
}
