"""The words of the model: the organ catalogue (TotalSegmentator's classes, SNOMED codes and
colours), the finding catalogue, Slicer terminology, and the prompt templates."""
