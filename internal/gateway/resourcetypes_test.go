package gateway

import (
	"testing"

	"github.com/phigate/phigate/internal/fhir"
)

// The gateway's lists of types by search parameter name only R4 resource
// types (internal/fhir holds the one list).
func TestCompartmentParamTypesAreR4ResourceTypes(t *testing.T) {
	for name, types := range map[string]map[string]bool{"patientParamTypes": patientParamTypes, "subjectParamTypes": subjectParamTypes} {
		for typ := range types {
			if !fhir.IsResourceType(typ) {
				t.Errorf("%s: %q is not a FHIR R4 resource type", name, typ)
			}
		}
	}
	for typ := range subjectParamTypes {
		if !patientParamTypes[typ] {
			t.Errorf("subjectParamTypes: %q is not in patientParamTypes", typ)
		}
	}
}
