// Transport conformance on protocol version 1: every case of conformance-cases.ts, over every
// transport the plane serves. Version 2 is conformance-v2.test.ts, so the two run side by side.
import { describeConformance } from './conformance-cases.js';

describeConformance(1);
