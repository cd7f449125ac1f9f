// Transport conformance on protocol version 2: every case of conformance-cases.ts, over every
// transport the plane serves. Version 1 is conformance-v1.test.ts, so the two run side by side.
import { describeConformance } from './conformance-cases.js';

describeConformance(2);
