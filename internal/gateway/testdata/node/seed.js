'use strict';
// The synthetic seed, built by the same rules as internal/fhir/fhirtest
// (data.go): three patients, 25 Observations for pat-a (the last one,
// obs-a-25, with its encounter filed under pat-b), 3 for each of the others,
// one Encounter, Condition and MedicationRequest each. SYNTHETIC DATA ONLY.

const PATIENTS = ['pat-a', 'pat-b', 'pat-c'];
const OBSERVATIONS_OF_A = 25;
const OBSERVATIONS_OF_OTHERS = 3;
const MISFILED = 'obs-a-25';

function short(p) {
  return p.slice(-1);
}

function seed(now) {
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const out = { Patient: [], Observation: [], Encounter: [], Condition: [], MedicationRequest: [] };
  const add = (r) => {
    r.meta = {
      versionId: '1',
      lastUpdated: stamp,
      tag: [{ system: 'https://phigate.dev/fhir/tags', code: 'SYNTHETIC' }],
    };
    out[r.resourceType].push(r);
  };
  const ref = (s) => ({ reference: s });
  PATIENTS.forEach((p, i) => {
    add({
      resourceType: 'Patient',
      id: p,
      active: true,
      name: [{ family: 'Synthetic', given: [`Test${i + 1}`] }],
      birthDate: `19${5 + i}0-01-01`,
    });
  });
  for (const p of PATIENTS) {
    const n = p === 'pat-a' ? OBSERVATIONS_OF_A : OBSERVATIONS_OF_OTHERS;
    for (let i = 1; i <= n; i++) {
      const id = `obs-${short(p)}-${i}`;
      const enc = id === MISFILED ? 'enc-b-1' : `enc-${short(p)}-1`;
      add({
        resourceType: 'Observation',
        id,
        status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
        subject: ref(`Patient/${p}`),
        encounter: ref(`Encounter/${enc}`),
        valueQuantity: { value: 60 + i, unit: '/min' },
      });
    }
  }
  for (const p of PATIENTS) {
    const s = short(p);
    add({
      resourceType: 'Encounter',
      id: `enc-${s}-1`,
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      subject: ref(`Patient/${p}`),
    });
    add({ resourceType: 'Condition', id: `cond-${s}-1`, code: { text: 'Synthetic condition' }, subject: ref(`Patient/${p}`) });
    add({
      resourceType: 'MedicationRequest',
      id: `medrx-${s}-1`,
      status: 'active',
      intent: 'order',
      medicationCodeableConcept: { text: 'Synthetic medication' },
      subject: ref(`Patient/${p}`),
    });
  }
  return out;
}

module.exports = { seed, PATIENTS, OBSERVATIONS_OF_A, MISFILED };
