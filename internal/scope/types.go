package scope

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/phigate/phigate/internal/fhir"
)

// ErrUnknownResourceType is matched, with errors.Is, by the error
// [ResourceTypes.Check] returns for a scope that names a resource type
// neither FHIR R4 nor the deployment defines. That error matches
// [ErrInvalid] too.
var ErrUnknownResourceType = errors.New("unknown resource type")

// MaxCustomTypes bounds the custom resource types of a deployment.
const MaxCustomTypes = 256

// ResourceTypes is what a new scope may name as its resource type: "*",
// the FHIR R4 resource types ([fhir.IsResourceType]) and the custom types
// of the deployment (config key scopes.custom_resource_types). The zero
// value allows "*" and the R4 types only. It is immutable and safe for
// concurrent use.
//
// The grammar ([Parse]) accepts any resource-type-shaped name, so that a
// token issued under an older configuration still loads; ResourceTypes is
// checked where a scope is issued or added: token creation and change, and
// the gateway's configuration.
type ResourceTypes struct {
	custom []string // sorted
}

// ErrInvalidCustomType is matched by the errors of [NewResourceTypes] and
// [CheckCustomType].
var ErrInvalidCustomType = errors.New("invalid custom resource type")

// CheckCustomType returns nil when name may be a custom resource type: it
// satisfies the grammar's resource rule (an upper-case letter, then
// letters, at most 64 bytes) and is not an R4 type; otherwise an error,
// matching ErrInvalidCustomType, that says why.
func CheckCustomType(name string) error {
	switch f := checkResource(name, 0); {
	case name == "*" || !f.ok():
		return fmt.Errorf("%w %q: must be an upper-case letter, then letters (at most 64)", ErrInvalidCustomType, display(name))
	case fhir.IsResourceType(name):
		return fmt.Errorf("%w %q: already a FHIR R4 resource type", ErrInvalidCustomType, name)
	}
	return nil
}

// NewResourceTypes returns the ResourceTypes of the R4 types and custom.
// Each custom type MUST pass [CheckCustomType] and MUST NOT repeat; there
// are at most 256. The error, matching ErrInvalidCustomType, says which
// one is wrong and why.
func NewResourceTypes(custom ...string) (ResourceTypes, error) {
	if len(custom) > MaxCustomTypes {
		return ResourceTypes{}, fmt.Errorf("%w: %d custom resource types, more than %d", ErrInvalidCustomType, len(custom), MaxCustomTypes)
	}
	seen := make(map[string]bool, len(custom))
	for _, c := range custom {
		if err := CheckCustomType(c); err != nil {
			return ResourceTypes{}, err
		}
		if seen[c] {
			return ResourceTypes{}, fmt.Errorf("%w %q: listed twice", ErrInvalidCustomType, c)
		}
		seen[c] = true
	}
	sorted := slices.Clone(custom)
	slices.Sort(sorted)
	return ResourceTypes{custom: sorted}, nil
}

// Known reports whether name is "*", an R4 resource type or a custom type.
func (rt ResourceTypes) Known(name string) bool {
	if name == "*" || fhir.IsResourceType(name) {
		return true
	}
	_, found := slices.BinarySearch(rt.custom, name)
	return found
}

// Custom returns the custom types, sorted (a copy).
func (rt ResourceTypes) Custom() []string { return slices.Clone(rt.custom) }

// Check returns nil when every SMART scope of set names a known resource
// type (plain scopes name none), and otherwise an [*Error] for the first
// that does not, which matches ErrUnknownResourceType and ErrInvalid and
// suggests the nearest known type when one is close ("did you mean
// Observation?").
func (rt ResourceTypes) Check(set Set) error {
	for _, s := range set.scopes {
		if err := rt.CheckScope(s); err != nil {
			return err
		}
	}
	return nil
}

// CheckScope is Check for one scope.
func (rt ResourceTypes) CheckScope(s Scope) error {
	if !s.IsSMART() || rt.Known(s.res) {
		return nil
	}
	// A resource type is letters only, so quoting it cannot repeat a
	// token secret ("phi_" has an underscore).
	var b strings.Builder
	fmt.Fprintf(&b, "unknown resource type %q: not a FHIR R4 resource type", s.res)
	if len(rt.custom) > 0 {
		b.WriteString(" nor a custom one")
	}
	if near := fhir.Nearest(s.res, rt.custom...); near != "" {
		fmt.Fprintf(&b, " (did you mean %s?)", near)
	} else {
		b.WriteString(" (a custom type must be listed in scopes.custom_resource_types)")
	}
	return &Error{Scope: display(s.str), Reason: b.String(), unknownType: true}
}
